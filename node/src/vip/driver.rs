//! VIP drivers: how the address is put on this node and taken off it. One trait, three drivers:
//! `linux` (address on an interface, gratuitous ARP, and a kernel fence in nftables), `loopback` (the
//! one-machine demo: addresses in 127/8 are always local, so owning the VIP is binding its sockets),
//! and `command` (an operator's script, e.g. one that moves a cloud provider's floating IP).

use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::Command;

use super::netlink::{Family, fence_batch};

/// Longest wait for `ip` or `nft` (they answer in milliseconds).
const TOOL_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VipError {
    #[error("vip address {0:?}: expected an IP address with a prefix length, e.g. 198.18.0.100/24")]
    Address(String),
    #[error("unknown vip driver {0:?}: expected linux, loopback or command")]
    UnknownDriver(String),
    #[error("the loopback driver needs an address in 127.0.0.0/8 or ::1, not {0}")]
    NotLoopback(IpAddr),
    #[error("the command driver needs [vip] command")]
    NoCommand,
    #[error("running {tool}: {source}")]
    Spawn {
        tool: String,
        source: std::io::Error,
    },
    #[error("{tool} did not finish within {timeout:?}")]
    Timeout { tool: String, timeout: Duration },
    #[error("{tool} failed ({status}): {stderr}")]
    Failed {
        tool: String,
        status: String,
        stderr: String,
    },
}

/// The VIP with its prefix length, as configured (`198.18.0.100/24`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VipAddr {
    pub ip: IpAddr,
    pub prefix: u8,
}

impl std::str::FromStr for VipAddr {
    type Err = VipError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || VipError::Address(s.to_owned());
        let (ip, prefix) = s.split_once('/').ok_or_else(bad)?;
        let ip: IpAddr = ip.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        if prefix > max || ip.is_unspecified() || ip.is_multicast() {
            return Err(bad());
        }
        Ok(Self { ip, prefix })
    }
}

impl std::fmt::Display for VipAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.ip, self.prefix)
    }
}

/// Puts the VIP on this node and takes it off. Every step is idempotent: the owner loop may repeat one
/// after an error or a restart.
pub trait VipDriver: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// At start, before any lease: leftovers of an earlier run are removed and the fence installed.
    fn prepare(&self) -> impl Future<Output = Result<(), VipError>> + Send;
    /// The lease is ours until `until`: the address goes up.
    fn acquire(&self, until: Instant) -> impl Future<Output = Result<(), VipError>> + Send;
    /// The lease was renewed; it holds until `until`.
    fn renew(&self, until: Instant) -> impl Future<Output = Result<(), VipError>> + Send;
    /// Tell the neighbours where the address lives now (gratuitous ARP).
    fn announce(&self) -> impl Future<Output = Result<(), VipError>> + Send;
    /// The lease is gone: the address goes down.
    fn release(&self) -> impl Future<Output = Result<(), VipError>> + Send;
}

/// The one-machine demo: every node shares the host's loopback, where 127/8 is always local.
#[derive(Debug)]
pub struct Loopback;

impl Loopback {
    pub fn new(addr: VipAddr) -> Result<Self, VipError> {
        if addr.ip.is_loopback() {
            Ok(Self)
        } else {
            Err(VipError::NotLoopback(addr.ip))
        }
    }
}

impl VipDriver for Loopback {
    fn name(&self) -> &'static str {
        "loopback"
    }
    async fn prepare(&self) -> Result<(), VipError> {
        Ok(())
    }
    async fn acquire(&self, _until: Instant) -> Result<(), VipError> {
        Ok(())
    }
    async fn renew(&self, _until: Instant) -> Result<(), VipError> {
        Ok(())
    }
    async fn announce(&self) -> Result<(), VipError> {
        Ok(())
    }
    async fn release(&self) -> Result<(), VipError> {
        Ok(())
    }
}

/// The address on a Linux interface, announced by gratuitous ARP, and fenced in the kernel: nftables
/// drops ARP requests for the VIP, and packets to and from it, unless a set element this node refreshes
/// with the lease's remaining time is present. A frozen process cannot refresh it, so its kernel stops
/// answering for the VIP when the lease ends, though the address is still on the interface.
pub struct Linux {
    addr: VipAddr,
    interface: String,
    netlink: super::netlink::Netlink,
}

impl std::fmt::Debug for Linux {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Linux")
            .field("addr", &self.addr)
            .field("interface", &self.interface)
            .finish_non_exhaustive()
    }
}

/// The nftables table holding the fence (one per network namespace).
const TABLE: &str = "pbx_vip";

impl Linux {
    pub fn new(addr: VipAddr, interface: &str) -> Result<Self, VipError> {
        let ok = !interface.is_empty()
            && interface.len() <= 15
            && interface
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b));
        if !ok {
            return Err(VipError::Address(format!("interface {interface:?}")));
        }
        Ok(Self {
            addr,
            interface: interface.to_owned(),
            netlink: super::netlink::Netlink::new(),
        })
    }

    fn family(&self) -> &'static str {
        if self.addr.ip.is_ipv4() { "ip" } else { "ip6" }
    }

    fn ruleset(&self) -> String {
        let (fam, ip) = (self.family(), self.addr.ip);
        let set_type = if ip.is_ipv4() {
            "ipv4_addr"
        } else {
            "ipv6_addr"
        };
        let mut rules = format!(
            "table inet {TABLE} {{\n\
             \x20 set lease {{ type {set_type}; flags timeout; }}\n\
             \x20 chain input {{ type filter hook input priority -10; policy accept;\n\
             \x20   {fam} daddr {ip} {fam} daddr != @lease drop;\n  }}\n\
             \x20 chain output {{ type filter hook output priority -10; policy accept;\n\
             \x20   {fam} saddr {ip} {fam} saddr != @lease drop;\n  }}\n}}\n"
        );
        if ip.is_ipv4() {
            rules.push_str(&format!(
                "table arp {TABLE} {{\n\
                 \x20 set lease {{ type ipv4_addr; flags timeout; }}\n\
                 \x20 chain input {{ type filter hook input priority -10; policy accept;\n\
                 \x20   arp operation request arp daddr ip {ip} arp daddr ip != @lease drop;\n  }}\n\
                 \x20 chain output {{ type filter hook output priority -10; policy accept;\n\
                 \x20   arp saddr ip {ip} arp saddr ip != @lease drop;\n  }}\n}}\n"
            ));
        }
        rules
    }

    fn tables(&self) -> &'static [&'static str] {
        if self.addr.ip.is_ipv4() {
            &["inet", "arp"]
        } else {
            &["inet"]
        }
    }

    /// The nftables families the fence's sets live in.
    fn families(&self) -> &'static [Family] {
        if self.addr.ip.is_ipv4() {
            &[Family::Inet, Family::Arp]
        } else {
            &[Family::Inet]
        }
    }

    /// The fence's element, replaced atomically (one nftables transaction over netlink) with a
    /// timeout running to `until` (none: the fence closes).
    ///
    /// The timeout is read from the clock as the message is built, right before it is sent, and
    /// checked again once the kernel answered: a process frozen in between (SIGSTOP, a stall) must not
    /// wake up and grant its kernel a lease that ran out while it slept.
    async fn set_fence(&self, until: Option<Instant>) -> Result<(), VipError> {
        self.send_fence(until).await?;
        if until.is_some_and(|u| Instant::now() >= u) {
            self.send_fence(None).await?;
        }
        Ok(())
    }

    async fn send_fence(&self, until: Option<Instant>) -> Result<(), VipError> {
        let seq = self.netlink.next_seq(2 * self.families().len() as u32 + 1);
        let remaining = until.and_then(|u| u.checked_duration_since(Instant::now()));
        // Under a millisecond, the kernel would treat the timeout as none: grant nothing.
        let ms = remaining
            .map(|r| u64::try_from(r.as_millis()).unwrap_or(u64::MAX))
            .filter(|ms| *ms >= 1);
        let (batch, acks) = fence_batch(seq, TABLE, self.families(), self.addr.ip, ms);
        self.netlink.fence(&batch, seq, acks).await
    }

    /// Puts the address on the interface, or takes it off; either is idempotent.
    async fn address(&self, add: bool) -> Result<(), VipError> {
        let index = self.netlink.link_index(&self.interface).await?;
        self.netlink.address(add, index, self.addr).await
    }
}

impl VipDriver for Linux {
    fn name(&self) -> &'static str {
        "linux"
    }

    async fn prepare(&self) -> Result<(), VipError> {
        // A node that crashed as owner comes back with the address still on: it is not the owner now.
        self.address(false).await?;
        let mut script = String::new();
        for t in self.tables() {
            // `add` then `delete` makes the delete succeed whether or not the table existed.
            script.push_str(&format!(
                "add table {t} {TABLE}\ndelete table {t} {TABLE}\n"
            ));
        }
        script.push_str(&self.ruleset());
        nft(&|| script.clone()).await
    }

    async fn acquire(&self, until: Instant) -> Result<(), VipError> {
        self.set_fence(Some(until)).await?;
        self.address(true).await
    }

    async fn renew(&self, until: Instant) -> Result<(), VipError> {
        self.set_fence(Some(until)).await
    }

    async fn announce(&self) -> Result<(), VipError> {
        if self.addr.ip.is_ipv6() {
            // Unsolicited neighbour advertisements are not sent yet: IPv6 neighbours find the new
            // owner by neighbour unreachability detection, in seconds.
            return Ok(());
        }
        let ip = self.addr.ip.to_string();
        // One packet per call, sent as arping starts; the owner loop paces the repeats and checks its
        // lease before each. arping lingers a second after sending: reaped in the background.
        let child = Command::new("arping")
            .args(["-q", "-U", "-c", "1"])
            .args([
                "-I",
                self.interface.as_str(),
                "-s",
                ip.as_str(),
                ip.as_str(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(false)
            .spawn()
            .map_err(|source| VipError::Spawn {
                tool: "arping".into(),
                source,
            })?;
        tokio::spawn(async move {
            let mut child = child;
            let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
        });
        Ok(())
    }

    async fn release(&self) -> Result<(), VipError> {
        // The fence first: from this instant the kernel neither answers ARP for the VIP nor passes its
        // packets, whatever happens to the address removal below.
        let fence = self.set_fence(None).await;
        self.address(false).await?;
        fence
    }
}

/// Runs the operator's script: `<command> acquire|release <address/prefix> <interface>`.
#[derive(Debug)]
pub struct Script {
    command: PathBuf,
    addr: VipAddr,
    interface: String,
    timeout: Duration,
}

impl Script {
    pub fn new(
        command: Option<PathBuf>,
        addr: VipAddr,
        interface: &str,
        timeout: Duration,
    ) -> Result<Self, VipError> {
        Ok(Self {
            command: command.ok_or(VipError::NoCommand)?,
            addr,
            interface: interface.to_owned(),
            timeout,
        })
    }

    async fn call(&self, verb: &str) -> Result<(), VipError> {
        let addr = self.addr.to_string();
        let tool = self.command.to_string_lossy().into_owned();
        run(
            &tool,
            &[verb, addr.as_str(), self.interface.as_str()],
            Some(self.timeout),
        )
        .await
    }
}

impl VipDriver for Script {
    fn name(&self) -> &'static str {
        "command"
    }
    async fn prepare(&self) -> Result<(), VipError> {
        self.call("release").await
    }
    async fn acquire(&self, _until: Instant) -> Result<(), VipError> {
        self.call("acquire").await
    }
    async fn renew(&self, _until: Instant) -> Result<(), VipError> {
        Ok(())
    }
    async fn announce(&self) -> Result<(), VipError> {
        Ok(())
    }
    async fn release(&self) -> Result<(), VipError> {
        self.call("release").await
    }
}

/// Runs `nft -f -` with the script `script` writes once `nft` has started.
async fn nft(script: &(dyn Fn() -> String + Sync)) -> Result<(), VipError> {
    run_with_input("nft", &["-f", "-"], Some(script), TOOL_TIMEOUT).await
}

/// Runs a tool to completion within a timeout; its stderr becomes the error.
async fn run(tool: &str, args: &[&str], timeout: Option<Duration>) -> Result<(), VipError> {
    run_with_input(tool, args, None, timeout.unwrap_or(TOOL_TIMEOUT)).await
}

async fn run_with_input(
    tool: &str,
    args: &[&str],
    input: Option<&(dyn Fn() -> String + Sync)>,
    timeout: Duration,
) -> Result<(), VipError> {
    use tokio::io::AsyncWriteExt as _;
    let mut child = Command::new(tool)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| VipError::Spawn {
            tool: tool.to_owned(),
            source,
        })?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        let _ = stdin.write_all(input().as_bytes()).await;
    }
    let out = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| VipError::Timeout {
            tool: tool.to_owned(),
            timeout,
        })?
        .map_err(|source| VipError::Spawn {
            tool: tool.to_owned(),
            source,
        })?;
    if out.status.success() {
        return Ok(());
    }
    let mut stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    stderr.truncate(512);
    Err(VipError::Failed {
        tool: tool.to_owned(),
        status: out.status.to_string(),
        stderr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_need_a_prefix_and_a_real_ip() {
        let a: VipAddr = "198.18.0.100/24".parse().unwrap();
        assert_eq!(a.ip, IpAddr::from([198, 18, 0, 100]));
        assert_eq!(a.prefix, 24);
        assert_eq!(a.to_string(), "198.18.0.100/24");
        assert!("fd00::100/64".parse::<VipAddr>().is_ok());
        for bad in [
            "198.18.0.100",
            "198.18.0.100/33",
            "0.0.0.0/0",
            "224.0.0.1/32",
            "x/24",
            "",
        ] {
            assert!(bad.parse::<VipAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn loopback_refuses_a_routable_address_and_linux_a_strange_interface() {
        assert!(Loopback::new("127.0.0.100/32".parse().unwrap()).is_ok());
        assert!(matches!(
            Loopback::new("198.18.0.100/24".parse().unwrap()),
            Err(VipError::NotLoopback(_))
        ));
        let a = "198.18.0.100/24".parse().unwrap();
        assert!(Linux::new(a, "eth0").is_ok());
        assert!(Linux::new(a, "eth0; reboot").is_err());
        assert!(Linux::new(a, "").is_err());
    }

    #[test]
    fn the_fence_covers_arp_and_both_directions() {
        let l = Linux::new("198.18.0.100/24".parse().unwrap(), "eth0").unwrap();
        let rules = l.ruleset();
        assert!(rules.contains("arp daddr ip 198.18.0.100 arp daddr ip != @lease drop"));
        assert!(rules.contains("ip daddr 198.18.0.100 ip daddr != @lease drop"));
        assert!(rules.contains("ip saddr 198.18.0.100 ip saddr != @lease drop"));
    }

    #[tokio::test]
    async fn a_failing_script_reports_its_stderr_and_a_slow_one_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("vip.sh");
        std::fs::write(
            &script,
            "#!/bin/sh\necho \"no such floating ip: $2\" >&2\nexit 3\n",
        )
        .unwrap();
        let slow = dir.path().join("slow.sh");
        std::fs::write(&slow, "#!/bin/sh\nsleep 5\n").unwrap();
        for p in [&script, &slow] {
            let _ = std::process::Command::new("chmod")
                .arg("+x")
                .arg(p)
                .status();
        }
        let a = "198.18.0.100/24".parse().unwrap();
        let d = Script::new(Some(script), a, "eth0", Duration::from_secs(2)).unwrap();
        match d.acquire(Instant::now() + Duration::from_millis(300)).await {
            Err(VipError::Failed { stderr, .. }) => {
                assert_eq!(stderr, "no such floating ip: 198.18.0.100/24");
            }
            other => panic!("{other:?}"),
        }
        let d = Script::new(Some(slow), a, "eth0", Duration::from_millis(200)).unwrap();
        assert!(matches!(d.release().await, Err(VipError::Timeout { .. })));
        assert!(matches!(
            Script::new(None, a, "eth0", Duration::from_secs(1)),
            Err(VipError::NoCommand)
        ));
    }
}
