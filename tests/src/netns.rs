//! A network namespace joined to this machine by a veth pair: a second "host" for tests of
//! processes cut off from the network. Processes started in it ([`Namespace::command`]) reach
//! this machine at [`Namespace::host_addr`] only through the pair, so [`Namespace::cut`] (the
//! namespace's end of the link down) cuts them off as a pulled cable would: packets are
//! dropped, connections hang; [`Namespace::restore`] brings the link back.
//!
//! Needs `ip` (iproute2) and the right to make namespaces (root, or CAP_NET_ADMIN); a test
//! that cannot have them fails, naming what to install.

use std::process::{Command, Stdio};

/// A network namespace and its veth pair; both are deleted when dropped.
#[derive(Debug)]
pub struct Namespace {
    name: String,
    host_if: String,
    inner_if: String,
    host: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            format!("running `ip` ({e}): install iproute2 (apt-get install -y iproute2)")
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Namespace {
    /// Makes the namespace `fg<id>` with a veth pair: this machine's end gets `10.x.y.1/30`,
    /// the namespace's `10.x.y.2/30` (x, y from `id`). Panics, naming the cause, if it cannot.
    pub fn new(id: u32) -> Namespace {
        let (x, y) = (100 + (id / 250) % 150, id % 250);
        let ns = Namespace {
            name: format!("fg{id}"),
            host_if: format!("fgh{id}"),
            inner_if: format!("fgn{id}"),
            host: format!("10.{x}.{y}.1"),
        };
        // Left over from a run that was killed.
        let _ = ip(&["netns", "del", &ns.name]);
        let _ = ip(&["link", "del", &ns.host_if]);
        let inner = format!("10.{x}.{y}.2/30");
        let host = format!("{}/30", ns.host);
        let steps: [&[&str]; 8] = [
            &["netns", "add", &ns.name],
            &[
                "link",
                "add",
                &ns.host_if,
                "type",
                "veth",
                "peer",
                "name",
                &ns.inner_if,
            ],
            &["link", "set", &ns.inner_if, "netns", &ns.name],
            &["addr", "add", &host, "dev", &ns.host_if],
            &["link", "set", &ns.host_if, "up"],
            &["-n", &ns.name, "addr", "add", &inner, "dev", &ns.inner_if],
            &["-n", &ns.name, "link", "set", &ns.inner_if, "up"],
            &["-n", &ns.name, "link", "set", "lo", "up"],
        ];
        for step in steps {
            if let Err(e) = ip(step) {
                panic!(
                    "making a network namespace for the test: {e}. The test runs processes as separate hosts: it needs iproute2 (apt-get install -y iproute2) and root (or CAP_NET_ADMIN)"
                );
            }
        }
        ns
    }

    /// This machine's address on the pair: what processes in the namespace connect to.
    pub fn host_addr(&self) -> &str {
        &self.host
    }

    /// `program args…` run inside the namespace (its environment as `inner`'s).
    pub fn command(&self, inner: &Command) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name])
            .arg(inner.get_program())
            .args(inner.get_args());
        for (k, v) in inner.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        if let Some(dir) = inner.get_current_dir() {
            c.current_dir(dir);
        }
        c
    }

    /// Takes the namespace's end of the link down: its processes are cut off.
    pub fn cut(&self) {
        self.link("down");
    }

    /// Brings the link back up.
    pub fn restore(&self) {
        self.link("up");
    }

    fn link(&self, state: &str) {
        ip(&["-n", &self.name, "link", "set", &self.inner_if, state])
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
        let _ = ip(&["link", "del", &self.host_if]);
    }
}
