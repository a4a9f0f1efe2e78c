//! The guard on requests to addresses users configure (a webhook's URL): server-side request
//! forgery must not reach the server's own network. A host is resolved on every attempt and
//! refused when any of its addresses is loopback, private, link-local, shared (carrier NAT),
//! multicast, unspecified, reserved or a cloud metadata address — unless the host is listed in
//! `M_WEBHOOK_ALLOW_HOSTS`. The caller then connects only to the addresses checked here (no
//! second lookup a DNS answer could change), and follows no redirect.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Why a target was not called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blocked {
    /// An address the guard refuses (permanent until the configuration changes).
    Refused(String),
    /// The name did not resolve (may pass later).
    Unresolved(String),
}

/// Hosts that may resolve to any address, as written in URLs (lower case, IPv6 without
/// brackets).
#[derive(Debug, Clone, Default)]
pub struct Guard {
    allow: Vec<String>,
}

fn normal_host(host: &str) -> String {
    host.trim().trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase()
}

impl Guard {
    pub fn new(allow_hosts: &[String]) -> Guard {
        Guard { allow: allow_hosts.iter().map(|h| normal_host(h)).filter(|h| !h.is_empty()).collect() }
    }

    pub fn allows(&self, host: &str) -> bool {
        let host = normal_host(host);
        self.allow.contains(&host)
    }

    /// The addresses to connect to for `host:port`, every one of them checked.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Blocked> {
        let bare = normal_host(host);
        let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((bare.as_str(), port))
                .await
                .map_err(|e| Blocked::Unresolved(format!("cannot resolve {bare}: {e}")))?
                .collect(),
        };
        if addrs.is_empty() {
            return Err(Blocked::Unresolved(format!("{bare} has no address")));
        }
        if self.allows(&bare) {
            return Ok(addrs);
        }
        for addr in &addrs {
            if let Some(kind) = forbidden(addr.ip()) {
                return Err(Blocked::Refused(format!(
                    "{bare} resolves to {} ({kind}): not allowed for webhooks unless the host is listed in M_WEBHOOK_ALLOW_HOSTS",
                    addr.ip()
                )));
            }
        }
        Ok(addrs)
    }
}

/// What kind of address `ip` is, when the guard refuses it.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    const METADATA: [Ipv4Addr; 3] = [
        Ipv4Addr::new(169, 254, 169, 254), // AWS, GCP, Azure, OpenStack
        Ipv4Addr::new(100, 100, 100, 200), // Alibaba Cloud
        Ipv4Addr::new(192, 0, 0, 192),     // Oracle Cloud
    ];
    let kind = if METADATA.contains(&ip) {
        "a cloud metadata address"
    } else if ip.is_loopback() {
        "loopback"
    } else if ip.is_private() {
        "private"
    } else if ip.is_link_local() {
        "link-local"
    } else if ip.is_multicast() {
        "multicast"
    } else if ip.is_broadcast() {
        "broadcast"
    } else if in_v4(ip, [0, 0, 0, 0], 8) {
        "unspecified"
    } else if in_v4(ip, [100, 64, 0, 0], 10) {
        "shared (carrier-grade NAT)"
    } else if in_v4(ip, [192, 0, 0, 0], 24) || in_v4(ip, [198, 18, 0, 0], 15) || in_v4(ip, [240, 0, 0, 0], 4) {
        "reserved"
    } else {
        return None;
    };
    Some(kind)
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return forbidden_v4(v4);
    }
    let segments = ip.segments();
    let o = ip.octets();
    // Forms that carry an IPv4 address: NAT64 (64:ff9b::/96, and the local-use 64:ff9b:1::/48)
    // and IPv4-compatible (::a.b.c.d) in the last 32 bits, 6to4 (2002::/16) in bits 16–48.
    let nat64 = segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || segments[..3] == [0x64, 0xff9b, 1];
    let compatible = segments[..6] == [0; 6] && !ip.is_loopback() && !ip.is_unspecified();
    if nat64 || compatible {
        return forbidden_v4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    if segments[0] == 0x2002 {
        return forbidden_v4(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    let first = segments[0];
    let kind = if ip == Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254) {
        "a cloud metadata address"
    } else if ip.is_loopback() {
        "loopback"
    } else if ip.is_unspecified() {
        "unspecified"
    } else if first & 0xfe00 == 0xfc00 {
        "private (unique local)"
    } else if first & 0xffc0 == 0xfe80 || first & 0xffc0 == 0xfec0 {
        "link-local"
    } else if ip.is_multicast() {
        "multicast"
    } else {
        return None;
    };
    Some(kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(s: &str) -> bool {
        forbidden(s.parse().expect("an address")).is_some()
    }

    #[test]
    fn internal_addresses_are_refused_and_public_ones_pass() {
        for ip in [
            "127.0.0.1",
            "127.8.9.10",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.1.1",
            "100.64.0.1",
            "100.100.100.200",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00:ec2::254",
            "fc00::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::a9fe:a9fe",
            "::7f00:1",
            "2002:a9fe:a9fe::1",
            "2002:7f00:1::",
        ] {
            assert!(refused(ip), "{ip} must be refused");
        }
        for ip in ["93.184.216.34", "8.8.8.8", "172.32.0.1", "2606:4700::1111", "::ffff:8.8.8.8", "2002:808:808::1"] {
            assert!(!refused(ip), "{ip} is public");
        }
    }

    #[tokio::test]
    async fn names_are_checked_after_resolution_unless_allowed() {
        let guard = Guard::new(&[]);
        assert!(matches!(guard.resolve("localhost", 80).await, Err(Blocked::Refused(_))));
        assert!(matches!(guard.resolve("127.0.0.1", 80).await, Err(Blocked::Refused(_))));
        assert!(matches!(guard.resolve("[::1]", 80).await, Err(Blocked::Refused(_))));
        let allowed = Guard::new(&["LocalHost".to_string(), "[::1]".to_string()]);
        assert!(allowed.resolve("localhost", 80).await.is_ok_and(|a| a.iter().all(|a| a.port() == 80)));
        assert!(allowed.resolve("::1", 80).await.is_ok());
        assert!(matches!(allowed.resolve("127.0.0.1", 80).await, Err(Blocked::Refused(_))), "only the listed host");
        assert!(matches!(guard.resolve("no-such-host.invalid", 80).await, Err(Blocked::Unresolved(_))));
    }
}
