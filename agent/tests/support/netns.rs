//! A throwaway network for firewall tests and benchmarks: one namespace per host, all joined
//! by veth pairs to a bridge in a hub namespace, addressed from documentation ranges
//! (192.0.2.0/24, 2001:db8::/64). Nothing leaves these namespaces, and the host's own
//! ruleset is never touched: `nft` only ever runs inside them.
//!
//! Every namespace is deleted when the [`Net`] is dropped, also when a test fails.

#![allow(dead_code)] // Shared by several test and bench binaries; each uses a subset.

use std::fs::File;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The namespaces of one test, named `fw<pid>x<n>-<role>` so parallel tests never collide.
#[derive(Debug)]
pub struct Net {
    prefix: String,
    created: Vec<String>,
}

impl Net {
    /// Builds the network with one host per `(role, host number)`, or says why it cannot
    /// (not root, no `ip netns`, no `nft`) so the caller can skip.
    pub fn new(hosts: &[(&str, u8)]) -> Result<Net, String> {
        if !nix::unistd::geteuid().is_root() {
            return Err("needs root to create network namespaces".into());
        }
        if Command::new("nft").arg("--version").output().is_err() {
            return Err("`nft` is not installed".into());
        }
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let prefix = format!(
            "fw{}x{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut net = Net {
            prefix,
            created: Vec::new(),
        };
        let hub = net
            .add_ns("hub")
            .map_err(|e| format!("`ip netns add` failed: {e}"))?;
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"]).map_err(|e| e.to_string())?;
        ip(&["-n", &hub, "link", "set", "br0", "up"]).map_err(|e| e.to_string())?;
        for (role, host) in hosts {
            net.add_host(&hub, role, *host)
                .map_err(|e| format!("building host {role}: {e}"))?;
        }
        Ok(net)
    }

    pub fn ns(&self, role: &str) -> String {
        format!("{}-{role}", self.prefix)
    }

    fn add_ns(&mut self, role: &str) -> io::Result<String> {
        let ns = self.ns(role);
        ip(&["netns", "add", &ns])?;
        self.created.push(ns.clone());
        Ok(ns)
    }

    fn add_host(&mut self, hub: &str, role: &str, host: u8) -> io::Result<()> {
        let ns = self.add_ns(role)?;
        let port = format!("v{host}");
        ip(&[
            "-n", hub, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ])?;
        ip(&["-n", hub, "link", "set", &port, "master", "br0", "up"])?;
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{}/24", v4(host)),
            "dev",
            "eth0",
        ])?;
        // nodad: the address is usable at once instead of after duplicate detection.
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{}/64", v6(host)),
            "dev",
            "eth0",
            "nodad",
        ])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])
    }

    /// Runs `f` on a fresh thread inside namespace `role` and returns its result. Sockets made
    /// there stay in that namespace; threads and processes it starts inherit it.
    pub fn run_in<T: Send + 'static>(
        &self,
        role: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        let path = format!("/run/netns/{}", self.ns(role));
        std::thread::spawn(move || {
            let file = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .unwrap_or_else(|e| panic!("setns {path}: {e}"));
            // Never let a test act on the host's network by mistake.
            let here = std::fs::metadata("/proc/thread-self/ns/net")
                .expect("own netns")
                .ino();
            assert_eq!(
                here,
                file.metadata().expect("netns file").ino(),
                "thread is not in {path}"
            );
            f()
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    /// Runs `nft args...` inside namespace `role`; returns stdout or the error output.
    pub fn nft(&self, role: &str, args: &[&str]) -> Result<String, String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns(role), "nft"])
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Tries a TCP connection from namespace `role` to `addr`.
    pub fn connect(&self, role: &str, addr: SocketAddr, timeout: Duration) -> Reach {
        self.run_in(role, move || {
            Reach::of(TcpStream::connect_timeout(&addr, timeout))
        })
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in self.created.iter().rev() {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("could not delete network namespace {ns}: {e}");
            }
        }
    }
}

/// What a connection attempt found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    Connected,
    /// No answer at all: the firewall dropped the SYN.
    TimedOut,
    /// Reset: nothing listens there (a broken test, not a firewall decision).
    Refused,
    Other(String),
}

impl Reach {
    fn of(result: io::Result<TcpStream>) -> Reach {
        match result {
            Ok(_) => Reach::Connected,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                ) =>
            {
                Reach::TimedOut
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Reach::Refused,
            Err(e) => Reach::Other(e.to_string()),
        }
    }
}

pub fn v4(host: u8) -> IpAddr {
    IpAddr::from([192, 0, 2, host])
}

pub fn v6(host: u8) -> IpAddr {
    IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(host)])
}

fn ip(args: &[&str]) -> io::Result<()> {
    let out = Command::new("ip").args(args).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}
